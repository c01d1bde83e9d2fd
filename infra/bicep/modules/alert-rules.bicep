// Azure Monitor alert rules: the two things that must wake someone even when the alert function
// itself cannot (a webhook down, the app not starting):
//   * a message dead-lettered on any queue (Service Bus metric DeadletteredMessages > 0);
//   * a function execution that failed, or an exception logged (Application Insights).
// They notify the action group, which mails alertEmail when one is given.

@description('Service Bus namespace of the pipeline queues.')
param serviceBusNamespaceName string

@description('Application Insights component the Function App reports to.')
param appInsightsName string

@description('Azure region of the log alert (metric alerts are global).')
param location string

@description('Who to mail when a rule fires. Empty: the rules fire into the portal only.')
param alertEmail string = ''

param namePrefix string

param tags object = {}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-ops'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'cact-ops'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = empty(alertEmail) ? [] : [
  {
    actionGroupId: actionGroup.id
  }
]

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'A pipeline message was dead-lettered (docs/runbook.md, dead_letter).'
    severity: 1
    enabled: true
    scopes: [
      serviceBus.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
        }
      ]
    }
    actions: actions
  }
}

resource functionFailures 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-function-failures'
  location: location
  tags: tags
  properties: {
    description: 'A function execution failed or logged an exception (docs/runbook.md).'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'union requests, exceptions | where itemType == "exception" or success == false'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [for action in actions: action.actionGroupId]
    }
  }
}
